"""The shared fixtures (implementation fan-out ``codec`` / ``rib_impl`` /
``gen``, event-loop fan-out ``run`` / ``loop_factory``, ``free_port``,
``corpora``) come from the plugin shipped with the package."""

pytest_plugins = ["fastbgp.testing.plugin"]
