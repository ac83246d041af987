"""The target templates shipped with pudimd, one YAML file each (docs/templates.md)."""
