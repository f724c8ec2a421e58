"""The AWS adapters: S3 and the Glue catalog (storage), Powertools' logger, tracer and metrics
(observability). The only code of the package that talks to AWS; may import the domain."""
