"""Logs and metrics: JSON lines (Powertools for AWS Lambda's formatter) and CloudWatch metrics in
the Embedded Metric Format, on Lambda or with IMAGE_SEARCH_LOG_FORMAT=json; readable text lines
elsewhere."""
