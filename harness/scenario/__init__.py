"""The scenario language: YAML with source lines, validated once into frozen models.

``loader`` reads scenario and strategies files; ``model`` and ``strategy``
are what they become; ``problems`` turns every YAML and model error into a
``path:line: field: message`` problem; ``resolve`` imports every
``module:function`` a document names.
"""
