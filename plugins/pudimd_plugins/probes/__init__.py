"""Built-in probe plugins."""
