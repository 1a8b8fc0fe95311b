pytest_plugins = ["softmax_dispatch.conformance.plugin"]
