"""The program core: environment specs, networks, the program IR and its file format, the compiler and the interpreter."""
