"""`vigil` subcommands that service/ adds through the `vigil.commands` entry-point group."""
