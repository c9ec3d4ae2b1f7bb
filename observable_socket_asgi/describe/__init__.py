"""A router described for others: the AsyncAPI document, TypeScript types, payload schema
validation for typed routes, and the description the command line prints.
"""
