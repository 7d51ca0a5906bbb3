"""`python -m bench.perf --out DIR`: the kernel speed table (needs a CUDA GPU)."""
from bench.perf.table import main

if __name__ == "__main__":
    main()
