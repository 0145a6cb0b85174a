#!/usr/bin/env python3
"""Writes a tree of N small files for the many-files benchmarks.

Usage: small_files.py N DIR [SEED]

Files hold 40-200 random bytes (seeded, so a tree can be made again
identically), 100 files to a directory and 100 directories to a group:
DIR/gNNNN/dNN/fNN. One million files are 10,000 directories in 100 groups.
"""
import os
import random
import sys


def main():
    n, top = int(sys.argv[1]), sys.argv[2]
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    os.makedirs(top, exist_ok=False)
    made = 0
    d = 0
    while made < n:
        path = os.path.join(top, "g%04d" % (d // 100), "d%02d" % (d % 100))
        os.makedirs(path)
        for f in range(min(100, n - made)):
            with open(os.path.join(path, "f%02d" % f), "wb") as fh:
                fh.write(rng.randbytes(rng.randint(40, 200)))
        made += min(100, n - made)
        d += 1


if __name__ == "__main__":
    main()
