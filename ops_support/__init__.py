"""Pure helpers for the operations CLI: decisions from stack outputs, no AWS calls of their own."""
