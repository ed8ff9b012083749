from django.apps import AppConfig


class TrainerBridgeConfig(AppConfig):
    name = "trainer_bridge"
    verbose_name = "Trainer bridge"

    def ready(self) -> None:
        # Process lifecycle, not business flow: a generation worker loads and warms up its
        # models as it starts (trainer_bridge.preload, PARLEY_GENERATION_PRELOAD).
        from celery.signals import celeryd_init, worker_process_init

        celeryd_init.connect(_worker_init, dispatch_uid="parley-generation-preload-queues")
        worker_process_init.connect(_worker_process_init, dispatch_uid="parley-generation-preload")


def _worker_init(**kwargs) -> None:
    from trainer_bridge.preload import on_worker_init

    on_worker_init(**kwargs)


def _worker_process_init(**kwargs) -> None:
    from trainer_bridge.preload import on_worker_process_init

    on_worker_process_init(**kwargs)
