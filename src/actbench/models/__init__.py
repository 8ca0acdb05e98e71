"""Model families whose nonlinearity is a config choice."""
