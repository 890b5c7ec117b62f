"""One module per resource, each owning an ``APIRouter``."""
