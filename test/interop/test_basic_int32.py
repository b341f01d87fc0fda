#!/usr/bin/python3
"""Interop: ctwist's int32 receiver against Twisted's, both ways, 10,000
messages of random sizes up to the maximum 99999 bytes (see basic_interop.py).
Usage: test_basic_int32.py BUILD_DIR_OF_TEST_INTEROP"""
import sys

from basic_interop import main

sys.exit(main("int32", 99999))
