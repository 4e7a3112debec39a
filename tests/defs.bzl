"""The one macro for dpuemu's C++ tests."""

def dpuemu_test(name, srcs, deps = [], size = "small", **kwargs):
    native.cc_test(
        name = name,
        srcs = srcs,
        size = size,
        deps = deps + [
            "//tests:test_util",
            "//third_party:gtest_main",
        ],
        **kwargs
    )
