"""The live runtime: the engine loop, the timer loop and the outbox dispatcher.

They run in one asyncio process around a :class:`~journeyman.storage.base.Store`; see
:class:`journeyman.runtime.service.Runtime`.
"""
