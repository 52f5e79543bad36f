"""What the tests, the demo and the tools run pdgen against: ``s3server`` (a local S3 endpoint),
``faults`` (an S3 proxy that injects faults), ``chaos`` (the fault scenarios' figures) and
``child`` (the one way to start, wait for and stop a helper process). Nothing in the library
imports them."""
