"""The curiosity DSL's operations, their types, and the registry that names them."""
