"""The built-in synthetic dataset: an all-region MOSFET model on BAG3-style grids.

Every user gets this dataset without external tools. ``generate`` evaluates
an EKV-style model (``physics``) for the device types of the synthetic
technology "circtune-ekv" (``devices``) over the samples and sweeps that
``GeneratorSettings`` describe.
"""

from circtune.data.synthetic.devices import TECHNOLOGY, DeviceType, device_name, device_type, instance_parameters
from circtune.data.synthetic.generate import GENERATOR_NAME, GENERATOR_VERSION, GeneratorSettings, generate
from circtune.data.synthetic.physics import (
    ModelParameters,
    SmallSignalParameters,
    TerminalCharges,
    drain_current,
    small_signal_parameters,
    terminal_charges,
)

__all__ = [
    "GENERATOR_NAME",
    "GENERATOR_VERSION",
    "TECHNOLOGY",
    "DeviceType",
    "GeneratorSettings",
    "ModelParameters",
    "SmallSignalParameters",
    "TerminalCharges",
    "device_name",
    "device_type",
    "drain_current",
    "generate",
    "instance_parameters",
    "small_signal_parameters",
    "terminal_charges",
]
