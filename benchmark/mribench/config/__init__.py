"""Suite configuration: the strict schema (schema.py, with external.py, published.py and
resources.py for its parts), strict YAML reading (strict_yaml.py) and suite files with their
overrides (suite_file.py)."""
