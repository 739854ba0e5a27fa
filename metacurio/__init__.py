"""metacurio: search for curiosity algorithms expressed as programs in a typed DSL."""

__version__ = "0.1.0"
