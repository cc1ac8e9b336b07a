"""``prefetch(array, index)``: a software prefetch (LLVM's ``llvm.prefetch``) of one array
element into every cache level, for kernels that know which element they will read a few
iterations ahead (the replay looks up each access's table cell ahead of time). A hint: it
never faults, changes no value, and costs one instruction where the target ignores it."""

from __future__ import annotations

from llvmlite import ir
from numba import config, types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def prefetch(typingctx, array, index):
    """Prefetch ``array[index]`` for reading (``index`` must lie inside ``array``)."""
    if not isinstance(array, types.Array) or not isinstance(index, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        array_type, _ = signature.args
        ary = context.make_array(array_type)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, array_type, ary, [args[1]], wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                            "llvm.prefetch.p0i8")
        # read (0), locality 3 (keep in all levels), data cache (1)
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(array, index), codegen


if config.DISABLE_JIT:  # kernels run as plain Python (NUMBA_DISABLE_JIT=1): a hint is a no-op

    def prefetch(array, index):  # noqa: F811
        """Prefetch ``array[index]`` (a no-op without the JIT)."""
