"""The rules, one module each; importing a module registers its rule.

Codes are ``TS`` + a category digit + two digits (see ``docs/lint.md``):
TS0 files that could not be checked, TS1 modules, TS2 autograd, TS3 training and evaluation
loops, TS4 reproducibility and configuration, TS5 deprecated and unsafe APIs, TS6 style.
"""
