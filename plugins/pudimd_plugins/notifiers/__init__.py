"""Built-in notifier plugins, one module each, registered by entry point like any
third-party plugin."""
