_instruments = ("anthropic >= 1.0, < 3",)
