"""Refining a whole dataset: reading the inputs, running a Refiner over every image on one of three
engines (serial, pipelined threads, Ray actors), writing results in resumable shards, merging them.

Above io and core (it reads files and runs the Refiner), below the CLI (which parses options and
prints). The entry point is ``refine.refine_dataset``.
"""
