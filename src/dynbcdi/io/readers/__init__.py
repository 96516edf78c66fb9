"""Readers of other programs' and beamlines' files: intensity stacks, reconstructed objects, raw scans."""
