"""How people and other systems reach cases: settings, logging, the ops facade, the CLI."""
