"""Tests of the reference engine above libcontainer: daemon, engine, drivers."""
