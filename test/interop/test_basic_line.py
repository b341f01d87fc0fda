#!/usr/bin/python3
"""Interop: ctwist's line receiver against Twisted's, both ways, 10,000
messages of random sizes up to the maximum 16384 bytes (see basic_interop.py).
Usage: test_basic_line.py BUILD_DIR_OF_TEST_INTEROP"""
import sys

from basic_interop import main

sys.exit(main("line", 16384))
