"""Packaging a C++ library for use outside Bazel: its public headers and one shared library."""

load("@bazel_tools//tools/cpp:toolchain_utils.bzl", "find_cpp_toolchain")

def _public_headers_impl(ctx):
    # Every header the deps compile with, at its workspace path (hw/layer.h, ...): exactly the set
    # the installed headers include, never out of date. System headers are not among them.
    headers = depset(transitive = [d[CcInfo].compilation_context.headers for d in ctx.attr.deps])
    return [DefaultInfo(files = headers, runfiles = ctx.runfiles(transitive_files = headers))]

public_headers = rule(
    implementation = _public_headers_impl,
    attrs = {"deps": attr.label_list(providers = [CcInfo])},
    doc = "The headers of `deps` and of everything they depend on.",
)

def _whole_shared_library_impl(ctx):
    cc_toolchain = find_cpp_toolchain(ctx)
    features = cc_common.configure_features(
        ctx = ctx,
        cc_toolchain = cc_toolchain,
        requested_features = ctx.features,
        unsupported_features = ctx.disabled_features,
    )

    # A cc_binary(linkshared) pulls only the archive members something references, and nothing
    # in an empty .so references anything: relink every library of the deps as alwayslink.
    libraries = []
    flags = []
    for dep in ctx.attr.deps:
        for linker_input in dep[CcInfo].linking_context.linker_inputs.to_list():
            flags.extend(linker_input.user_link_flags)
            for lib in linker_input.libraries:
                archive = lib.pic_static_library or lib.static_library
                if archive == None:
                    continue
                libraries.append(cc_common.create_library_to_link(
                    actions = ctx.actions,
                    feature_configuration = features,
                    cc_toolchain = cc_toolchain,
                    pic_static_library = archive,
                    alwayslink = True,
                ))
    linking_context = cc_common.create_linking_context(linker_inputs = depset([
        cc_common.create_linker_input(
            owner = ctx.label,
            libraries = depset(libraries),
            user_link_flags = depset(flags + ctx.attr.linkopts),
        ),
    ]))
    output = cc_common.link(
        actions = ctx.actions,
        name = ctx.attr.library_name,
        feature_configuration = features,
        cc_toolchain = cc_toolchain,
        linking_contexts = [linking_context],
        output_type = "dynamic_library",
    )
    so = output.library_to_link.resolved_symlink_dynamic_library or output.library_to_link.dynamic_library
    return [DefaultInfo(files = depset([so]), runfiles = ctx.runfiles(files = [so]))]

whole_shared_library = rule(
    implementation = _whole_shared_library_impl,
    attrs = {
        "deps": attr.label_list(providers = [CcInfo]),
        "library_name": attr.string(mandatory = True, doc = "'dpuemu' makes libdpuemu.so"),
        "linkopts": attr.string_list(),
        "_cc_toolchain": attr.label(default = "@bazel_tools//tools/cpp:current_cc_toolchain"),
    },
    fragments = ["cpp"],
    toolchains = ["@bazel_tools//tools/cpp:toolchain_type"],
    doc = "One shared library holding all of `deps` (system libraries stay dynamic).",
)
