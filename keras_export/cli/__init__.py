"""``keras-export``, the command line: ``main`` (arguments, checks, dispatch), ``output``
(what it prints, exit codes), ``export_command`` (the export flow, with Prefect's API
started early) and ``registry_commands`` (labels, serving configs)."""
