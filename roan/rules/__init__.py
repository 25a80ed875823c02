"""Purge rules: which pages a change makes stale.

- :mod:`roan.rules.access`: which models and fields a rule may read;
- :mod:`roan.rules.templating`: URL templates and their placeholders;
- :mod:`roan.rules.targets`: what a typed purge target may be;
- :mod:`roan.rules.validation`: a rule checked before it is saved;
- :mod:`roan.rules.index`: the enabled rules by model and event, cached per process;
- :mod:`roan.rules.rendering`: a rule and an object, rendered into purge requests.
"""
