"""Guess My City: find a secret city by asking open and yes/no questions (LMRL-Gym)."""

from archer_envs.guess_my_city.env import GuessMyCityEnv, load_cities
from archer_envs.guess_my_city.oracle import CityOracle

__all__ = ["CityOracle", "GuessMyCityEnv", "load_cities"]
