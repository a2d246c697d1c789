"""Benchmark harness: dicomvault against Orthanc over DICOMweb (PS3.18), same data, same run.

Run ``bench/run.sh`` (or ``.venv/bin/python -m bench --help``). See bench/README.md.
"""
