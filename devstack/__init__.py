"""The development stack: local servers for the demo and the tests, the demo driver and
simulated annotators. Nothing in production (``flows/``, ``tasks/``, ``storage/``) imports it."""
