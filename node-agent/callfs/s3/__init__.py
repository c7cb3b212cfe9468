"""The S3-compatible face of a storage node (docs/s3.md): the same namespace, permissions, quotas, locks and
storage engine as the REST API, spoken in the Amazon S3 REST protocol with AWS Signature Version 4."""
