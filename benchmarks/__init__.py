"""Benchmarks of persevere against its peers (s5cmd, aws cli, boto3, obstore, rclone).

Run with ``make bench`` or ``python -m benchmarks.run``; see ``benchmarks/README.md``.
"""
