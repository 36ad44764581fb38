"""A caproto IOC serving ``--count`` float PVs, ``<prefix>sig0`` .. ``<prefix>sig<count-1>``:
one IOC holding as many PVs as a beamline's engine connects at start (the start benchmark).

Run as caproto's example IOCs are: ``python -m tests.many_pvs_ioc --prefix P: --count 200``.
"""

from __future__ import annotations

from caproto.server import PVGroup, pvproperty, run, template_arg_parser


def signals(count: int) -> type[PVGroup]:
    """A PVGroup class of ``count`` writable floats, ``sig<i>`` holding ``i`` at start."""
    body = {f"sig{i}": pvproperty(value=float(i), name=f"sig{i}") for i in range(count)}
    return type("ManySignals", (PVGroup,), body)


def main() -> None:
    parser, split_args = template_arg_parser(default_prefix="MANY:", desc=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=200, help="how many PVs")
    args = parser.parse_args()
    ioc_options, run_options = split_args(args)
    ioc = signals(args.count)(**ioc_options)
    run(ioc.pvdb, **run_options)


if __name__ == "__main__":
    main()
