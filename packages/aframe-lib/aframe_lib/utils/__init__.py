"""Small shared helpers: filesystem access (local or ``s3://``) and atomic writes."""
