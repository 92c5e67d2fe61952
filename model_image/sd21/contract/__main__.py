"""python -m sd21.contract: model_image/README.md's environment table, from the contract."""
from . import environment_table

print(environment_table(), end="")
