"""What the docs promise, one folder per page of docs/ (decorator.md: decorator/, ...)."""
