"""graphkit: small graph algorithms on adjacency lists."""
from .components import component_sizes, connected_components
from .generate import random_dag, random_graph
from .graph import Graph
from .ordering import topological_order
from .paths import eccentricity, shortest_distances

__version__ = "0.1.0"
__all__ = [
    "component_sizes", "connected_components", "random_dag", "random_graph", "Graph", "topological_order",
    "eccentricity", "shortest_distances",
]
