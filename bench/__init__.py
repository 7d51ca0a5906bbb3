"""Energy and carbon of LLM inference, kernel by kernel: measurement harness."""
