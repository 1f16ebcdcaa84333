"""``python -m vitlab.core fit --config X.yaml`` (also how DDP re-launches each rank)."""

from vitlab.core.cli import main

if __name__ == "__main__":
    main()
