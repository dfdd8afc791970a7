_instruments = ("openai >= 2.0, < 4",)
