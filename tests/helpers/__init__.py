"""Helpers shared by the tests, imported by absolute name: ``from helpers.tiny_data import ...``.

``tests/`` is on ``sys.path`` because pytest inserts the directory of the root
``tests/conftest.py`` (``tests/`` has no ``__init__.py``), whichever test paths it is given, so
these imports work when pytest collects several directories at once. Test modules never import
``conftest`` nor other test modules from another directory: shared constants, fake servers and
fixtures' building blocks live here.

- ``tiny_data``: the tiny synthetic data set and the Dataset arguments that read it
- ``console``: the ``aframe-train`` console script of the environment
- ``wandb_files``: read W&B offline run files
- ``fixtures_s3``, ``fixtures_ray``: moto S3 server and Ray head fixtures (pytest plugins)
- ``flow``: ``law run`` environments for the flow tests
- ``k8s_api``: a Kubernetes API server of the tests' own
- ``search``: tiny strain settings and the oracle model of the search tests
- ``gwdata_servers``: the real gwdatafind-server over GWF files the test writes, and DQSegDB
  and open-data (GWOSC) stand-ins speaking their HTTP protocols
"""
