"""The on-disk registry and the data domain: everything the console stores, and the rules for its data.

layout       the registry root and its folders (`open_registry`)
errors       every error a user can fix (`ConsoleError` and its kinds)
settings     limits and paths from the environment
storage      atomic writes, locks, names, the generation stamp, cached JSON reads
activity     the workspace's event feed
datasets     the versioned dataset library; readers, shapes, validation, pii check what goes in
mappings     retailer -> RMIS schema mappings; transforms, rmis, raw_sources are what they run on
generators   mappings, priors and catalogs turned into training datasets
plans        the campaign plan format of the planning task, and its judge

It imports nothing else of the project: training, federation and services build on it.
"""
