# A MAX custom op for tests/integration/test_max.py that fails at graph compile for int32 (a kernel constraint,
# the kind of failure after which MAX's compiler threads outlive the error): the op copies x.
import extensibility
from extensibility import InputTensor, OutputTensor
from max.gpu.host import DeviceContext


@extensibility.register("aura_test_refuses_int32")
struct RefusesInt32:
    @staticmethod
    def execute[target: StaticString](
        outp: OutputTensor[rank=1, ...],
        x: InputTensor[dtype=outp.dtype, rank=1, ...],
        ctx: DeviceContext,
    ) raises:
        comptime assert outp.dtype != DType.int32, "aura_test_refuses_int32: int32 is refused at graph compile"
        for i in range(x.dim_size(0)):
            outp.unsafe_ptr()[unsafe_offset=i] = x.unsafe_ptr()[unsafe_offset=i]
