"""The S3 HTTP front end (path-style), served by hypercorn on trio."""
