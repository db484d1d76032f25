"""The rules: one folder per category, one module per rule; importing a module registers it.

Codes are ``TS`` + a category digit + two digits (see ``docs/lint.md``): ``unchecked/`` TS0
files that could not be checked, ``modules/`` TS1, ``autograd/`` TS2, ``loops/`` TS3
training and evaluation loops, ``reproducibility/`` TS4, ``apis/`` TS5 deprecated and unsafe
APIs, ``style/`` TS6.
"""
